"""edgemoe.host.app."""
