"""Monitoring agents: they measure and report a state; policies decide what a state means."""
