"""Commands to gateways: stored requests, MQTT delivery and the gateways' acknowledgements."""
