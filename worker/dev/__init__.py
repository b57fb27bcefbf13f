"""Development tools (demo, load generator, `ilog produce`): not shipped in the production image."""
