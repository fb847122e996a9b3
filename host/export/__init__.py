"""edgemoe.host.export."""
