"""`leasewatch chaos`: faults against a real stack, and what each did to the readings."""
