"""The CI upload portal dialect: APK reading and verification, and the static Android catalog."""
