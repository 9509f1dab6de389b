"""What every stage uses: settings (``conf/<env>.toml``, each section defined once), named
errors and their exit codes, the command line's shared parts, the clock, and the one Spark
session factory. Imports no stage; loading settings needs neither Spark nor Java."""
