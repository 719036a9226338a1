"""The embedded demo: a capture and registry logs that ``sentinel demo`` runs the pipeline on."""
