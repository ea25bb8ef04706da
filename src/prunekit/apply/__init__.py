"""Mutation of models: masks, and physical surgery (structured)."""
