"""The shipper dialect: OTA zips in repo/builds/ and the static device list and updater feeds."""
