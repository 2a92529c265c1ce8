"""Pages for customers, reached from links in mail: no login, no cookies."""
