"""The concentrator daemon that runs on a GPRS gateway next to the meters."""
