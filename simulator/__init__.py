"""Virtual STS prepaid meters speaking real Modbus and DL/T 645 bytes."""
