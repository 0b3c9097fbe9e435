"""Configured destinations at work: validate, save, run, test and report on each one."""
