"""edgemoe.host.driver."""
