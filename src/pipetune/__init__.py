"""pipetune."""
