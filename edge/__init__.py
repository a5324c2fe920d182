"""Edge agent: reads serial and Modbus sensors on a gateway and publishes over MQTT."""
