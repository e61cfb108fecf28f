"""The Qt deployment server dialect: Qt Application Manager packages and the static Qt lists."""
