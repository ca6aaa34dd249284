"""The sensors: object listing, SQS events, run failures → incidents, redrives."""
