"""chat admin registrations arrive with its tables."""
