"""routing tables arrive with their issue; this module keeps Django app discovery uniform."""
