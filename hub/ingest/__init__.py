"""The inbound pipeline: group commit, batch context, steps, bounces."""
