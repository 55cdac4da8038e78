"""routing admin registrations arrive with its tables."""
