"""Telephony adapters: Twilio Voice, sipgate.io and a generic PBX webhook -> `CallEvent`s."""
