"""User agents: personas, memory, taste models and brains."""
