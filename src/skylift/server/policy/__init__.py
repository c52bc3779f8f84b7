"""Pure decisions over snapshots: how many containers, where they go, how a container's
end is classified, retry delays."""
