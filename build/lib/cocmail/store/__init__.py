"""Persistence: the models, the one unit of work, and the migrations that build the schema."""
