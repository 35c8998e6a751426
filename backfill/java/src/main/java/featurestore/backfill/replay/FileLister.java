package featurestore.backfill.replay;

import java.io.IOException;
import java.net.URI;
import java.time.LocalDate;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocatedFileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RemoteIterator;

/**
 * Lists the files of a batch layout exactly as {@code featurestore.eventlog.files} does (every file
 * under the layout's fixed prefix whose path matches the layout as an fnmatch glob, {@code {date}}
 * and {@code {hour}} standing for {@code *}; sorted by path), and reads each file's landing period
 * from its path: the {@code {date}} and {@code {hour}} parts, or Hive-style {@code dt=YYYY-MM-DD}
 * and {@code hour=HH} directories when the layout is a plain glob.
 */
final class FileLister {
    private static final long HOUR_MS = 3_600_000L;
    private static final Pattern HIVE_DATE = Pattern.compile("(?:^|/)(?:dt|date)=(\\d{4}-\\d{2}-\\d{2})(?:/|$)");
    private static final Pattern HIVE_HOUR = Pattern.compile("(?:^|/)(?:hour|hh)=(\\d{2})(?:/|$)");

    private FileLister() {}

    /**
     * One Hadoop configuration per class loader (this one), built on first use: building one parses
     * Hadoop's default XML resources, which costs milliseconds, and a replay opens every history
     * file through it (hundreds of files per source, one source per window of a plan). It is only
     * read after construction.
     */
    private static volatile Configuration sharedConf;

    static Configuration hadoopConf() {
        Configuration conf = sharedConf;
        if (conf == null) {
            synchronized (FileLister.class) {
                conf = sharedConf;
                if (conf == null) {
                    conf = new Configuration();
                    conf.setClassLoader(FileLister.class.getClassLoader());
                    conf.size(); // load the resources now, under the lock, not lazily on a reader's first get()
                    sharedConf = conf;
                }
            }
        }
        return conf;
    }

    /** A root as a Hadoop path: a bare local path becomes file://. */
    static Path rootPath(String root) {
        String trimmed = root.endsWith("/") && root.length() > 1 ? root.substring(0, root.length() - 1) : root;
        URI uri = URI.create(trimmed.startsWith("/") ? "file://" + trimmed : trimmed);
        return new Path(uri);
    }

    static FileSystem fileSystem(Path path) throws IOException {
        Thread thread = Thread.currentThread();
        ClassLoader previous = thread.getContextClassLoader();
        thread.setContextClassLoader(FileLister.class.getClassLoader());
        try {
            return path.getFileSystem(hadoopConf());
        } finally {
            thread.setContextClassLoader(previous);
        }
    }

    static List<HistoryFile> list(String root, String layout) throws IOException {
        Path rootPath = rootPath(root);
        FileSystem fs = fileSystem(rootPath);
        String rootDir = fs.makeQualified(rootPath).toUri().getPath();
        int slash = layout.lastIndexOf('/');
        String directory = slash < 0 ? "" : layout.substring(0, slash);
        String pattern = slash < 0 ? layout : layout.substring(slash + 1);
        if (pattern.isEmpty()) {
            pattern = "*";
        }
        String glob = directory.replace("{date}", "*").replace("{hour}", "*") + "/" + pattern;
        Pattern matcher = Pattern.compile(fnmatchToRegex(glob));
        // The fixed prefix of the directory, up to the last '/' before the first placeholder (as eventlog does).
        String fixed = "/" + (directory.contains("{") ? directory.substring(0, directory.indexOf('{')) : directory);
        String base = fixed.substring(0, fixed.lastIndexOf('/')).replaceFirst("^/", "");
        Path basePath = base.isEmpty() ? rootPath : new Path(rootPath, base);
        LandingParser landing = new LandingParser(directory);
        List<HistoryFile> out = new ArrayList<>();
        if (!fs.exists(basePath)) {
            return out;
        }
        RemoteIterator<LocatedFileStatus> it = fs.listFiles(basePath, true);
        while (it.hasNext()) {
            LocatedFileStatus status = it.next();
            String full = status.getPath().toUri().getPath();
            if (!full.startsWith(rootDir + "/")) {
                continue;
            }
            String rel = full.substring(rootDir.length() + 1);
            if (matcher.matcher(rel).matches()) {
                out.add(new HistoryFile(fs.makeQualified(status.getPath()).toString(), landing.landingStart(rel)));
            }
        }
        out.sort(Comparator.comparing(f -> f.path));
        return out;
    }

    /** Python's fnmatch.translate for the parts we need: *, ?, [seq], [!seq]. */
    static String fnmatchToRegex(String glob) {
        StringBuilder re = new StringBuilder();
        for (int i = 0; i < glob.length(); i++) {
            char c = glob.charAt(i);
            if (c == '*') {
                re.append(".*");
            } else if (c == '?') {
                re.append('.');
            } else if (c == '[') {
                int j = glob.indexOf(']', i + 2);
                if (j < 0) {
                    re.append("\\[");
                } else {
                    String body = glob.substring(i + 1, j);
                    if (body.startsWith("!")) {
                        body = "^" + body.substring(1);
                    }
                    re.append('[').append(body.replace("\\", "\\\\")).append(']');
                    i = j;
                }
            } else {
                re.append(Pattern.quote(String.valueOf(c)));
            }
        }
        return re.toString();
    }

    /** Reads the landing period's start from a file's relative path. */
    static final class LandingParser {
        private final Pattern layoutPattern;
        private final boolean hasDate;
        private final boolean hasHour;

        LandingParser(String directory) {
            hasDate = directory.contains("{date}");
            hasHour = directory.contains("{hour}");
            if (hasDate || hasHour) {
                StringBuilder re = new StringBuilder("^");
                int i = 0;
                while (i < directory.length()) {
                    if (directory.startsWith("{date}", i)) {
                        re.append("(?<date>\\d{4}-\\d{2}-\\d{2})");
                        i += 6;
                    } else if (directory.startsWith("{hour}", i)) {
                        re.append("(?<hour>\\d{2})");
                        i += 6;
                    } else if (directory.charAt(i) == '*') {
                        re.append("[^/]*");
                        i++;
                    } else {
                        re.append(Pattern.quote(String.valueOf(directory.charAt(i))));
                        i++;
                    }
                }
                re.append("/");
                layoutPattern = Pattern.compile(re.toString());
            } else {
                layoutPattern = null;
            }
        }

        long landingStart(String rel) {
            String date = null;
            String hour = null;
            if (layoutPattern != null) {
                Matcher m = layoutPattern.matcher(rel);
                if (m.lookingAt()) {
                    date = hasDate ? m.group("date") : null;
                    hour = hasHour ? m.group("hour") : null;
                }
            } else {
                Matcher d = HIVE_DATE.matcher(rel);
                date = d.find() ? d.group(1) : null;
                Matcher h = HIVE_HOUR.matcher(rel);
                hour = h.find() ? h.group(1) : null;
            }
            if (date == null) {
                return Long.MIN_VALUE;
            }
            long day = LocalDate.parse(date).atStartOfDay(ZoneOffset.UTC).toInstant().toEpochMilli();
            return hour == null ? day : day + Integer.parseInt(hour) * HOUR_MS;
        }
    }
}
