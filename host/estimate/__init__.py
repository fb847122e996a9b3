"""edgemoe.host.estimate."""
