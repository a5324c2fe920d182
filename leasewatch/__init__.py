"""LeaseWatch: equipment monitoring for leasing companies."""
