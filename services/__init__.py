"""The four services of the CSAT platform, and the production command line `csat` (cli/)."""
