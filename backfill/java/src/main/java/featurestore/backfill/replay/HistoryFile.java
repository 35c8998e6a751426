package featurestore.backfill.replay;

import java.io.Serializable;
import java.util.Objects;

/** One history file: its full path and the start of its landing period (ms; Long.MIN_VALUE if unknown). */
public final class HistoryFile implements Serializable {
    private static final long serialVersionUID = 1L;

    public final String path;
    public final long landingStartMs;

    public HistoryFile(String path, long landingStartMs) {
        this.path = path;
        this.landingStartMs = landingStartMs;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof HistoryFile f && f.path.equals(path) && f.landingStartMs == landingStartMs;
    }

    @Override
    public int hashCode() {
        return Objects.hash(path, landingStartMs);
    }

    @Override
    public String toString() {
        return path + "@" + landingStartMs;
    }
}
