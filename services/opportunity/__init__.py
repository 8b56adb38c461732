"""Quote to cash: `sfls opportunity push|status`, a won opportunity's lines as LogiSense account price plan entries."""
