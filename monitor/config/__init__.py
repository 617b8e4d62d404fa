"""What the operator states (settings, baseline, vantage points, channels), validated once."""
