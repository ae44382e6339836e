"""The concentrator daemon that runs on a GPRS gateway next to the meters."""

__version__ = "0.1.0"
