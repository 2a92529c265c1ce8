"""Telephony in the hub: call state, the call log entry, call-back tasks, call events."""
