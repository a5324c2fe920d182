"""The leasing domain: lessees, leases and assets, their risk signals, scores and credit checks."""
