"""The archive's operations, shared by the HTTP routes and the seeder."""
