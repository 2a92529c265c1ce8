"""SMS over Twilio: the only place where Twilio's forms and REST payloads exist."""
