"""Everything we send: the queue, the dispatcher, replies."""
