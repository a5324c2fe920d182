"""The scenarios shipped with LeaseWatch, one TOML file each (package data)."""
