"""Who may use LeaseWatch: API users, roles, keys and tokens, tenants, gateway MQTT credentials."""
