"""Integrations with frameworks, each an optional extra imported only by who uses it."""
