"""edgemoe.host.contracts."""
