"""upload: written bytes on their way to becoming draft assets (spool, journal, pipeline)."""
