"""Suite -> Plan: datasets, prompts, built-in probes and the frozen plan types every later
stage reads."""
