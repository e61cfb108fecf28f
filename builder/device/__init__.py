"""Device modules and firmware: their readers and the device index the agent reads."""
