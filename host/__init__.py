"""edgemoe.host."""
