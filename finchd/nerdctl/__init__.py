"""The nerdctl adapter: the only code that builds nerdctl argv and parses its output."""
