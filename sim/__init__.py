"""edgemoe.sim."""
