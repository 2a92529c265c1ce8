"""Telephony in the hub: the call log, call-back tasks and the call events agents see."""
