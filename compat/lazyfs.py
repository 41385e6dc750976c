"""A FUSE file system for power-cut tests: a pass-through to a backing directory in which file
contents written since the file's last fsync live only in this process's memory. Killing the
process (then unmounting) is a power cut: everything not fsynced is gone, as the page cache
would be, while fsynced data is on the backing directory.

Names are held to POSIX's letter (fsync(2): syncing a file does not make its directory entry
durable): a create, mkdir, rename, unlink or rmdir lasts only once the directory holding it
(both, for a rename) is fsynced. Each is applied to the backing directory at once and noted
in a journal there, with what it replaced or removed kept aside; the next start undoes,
newest first, every change whose directories were not fsynced before the cut.

While BACKING/.fail-fsync exists, fsync fails with EIO and drops the unsynced data, as Linux
may after a failed writeback.

Usage: python3 lazyfs.py BACKING MOUNTPOINT (runs in the foreground until killed).
Needs /dev/fuse, libfuse2 and fusepy; a test harness, not a product.
"""

import errno
import json
import os
import shutil
import sys
import threading

from fuse import FUSE, FuseOSError, Operations


# While a file of this name exists in the backing directory, every fsync fails with EIO.
FAIL_FSYNC = ".fail-fsync"
# The journal of name changes not yet durable, and where what they removed is kept.
JOURNAL = ".lazyfs-journal"
GRAVE = ".lazyfs-grave"


class Shadow:
    """A file's contents since its last fsync."""

    def __init__(self, data):
        self.data = bytearray(data)


class LazyFS(Operations):
    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.shadows = {}
        self.mutex = threading.RLock()
        self._undo_lost_names()
        self.journal = open(os.path.join(self.root, JOURNAL), "w", buffering=1)
        # Name changes not yet durable: id -> (change, directories still to be fsynced).
        self.pending = {}
        self.next_id = 0

    # ----- name durability -----

    def _undo_lost_names(self):
        """Undoes, newest first, the changes the last run journaled and never made durable."""
        grave = os.path.join(self.root, GRAVE)
        changes, durable = [], set()
        try:
            with open(os.path.join(self.root, JOURNAL)) as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        break  # a line cut short by the kill: nothing after it happened
                    if "durable" in entry:
                        durable.add(entry["durable"])
                    else:
                        changes.append(entry)
        except FileNotFoundError:
            pass
        for c in reversed([c for c in changes if c["id"] not in durable]):
            full = self._full(c["path"])
            kept = os.path.join(grave, str(c["id"]))
            if c["op"] in ("create", "mkdir"):
                if os.path.isdir(full) and not os.path.islink(full):
                    shutil.rmtree(full)
                elif os.path.lexists(full):
                    os.unlink(full)
            elif c["op"] in ("unlink", "rmdir"):
                if os.path.lexists(kept):
                    os.rename(kept, full)
            elif c["op"] == "rename":
                if os.path.lexists(self._full(c["to"])):
                    os.rename(self._full(c["to"]), full)
                if os.path.lexists(kept):
                    os.rename(kept, self._full(c["to"]))
        shutil.rmtree(grave, ignore_errors=True)
        os.makedirs(grave)

    def _journal(self, op, path, dirs, **more):
        """Notes a name change before it is made; returns where what it removes is kept."""
        cid = self.next_id
        self.next_id += 1
        change = {"id": cid, "op": op, "path": path, **more}
        self.journal.write(json.dumps(change) + "\n")
        self.pending[cid] = (change, set(dirs))
        return os.path.join(self.root, GRAVE, str(cid))

    def _durable(self, directory):
        """An fsync of `directory`: the changes in it that wait for nothing else last."""
        for cid, (change, dirs) in list(self.pending.items()):
            dirs.discard(directory)
            if dirs:
                continue
            del self.pending[cid]
            self.journal.write(json.dumps({"durable": cid}) + "\n")
            kept = os.path.join(self.root, GRAVE, str(cid))
            if os.path.isdir(kept) and not os.path.islink(kept):
                shutil.rmtree(kept)
            elif os.path.lexists(kept):
                os.unlink(kept)

    def _full(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def _shadow(self, path):
        """The file's shadow, made from its backing contents on the first unsynced change."""
        s = self.shadows.get(path)
        if s is None:
            with open(self._full(path), "rb") as f:
                s = Shadow(f.read())
            self.shadows[path] = s
        return s

    # ----- names: straight to the backing directory -----

    def getattr(self, path, fh=None):
        with self.mutex:
            try:
                st = os.lstat(self._full(path))
            except OSError as e:
                raise FuseOSError(e.errno)
            attrs = {k: getattr(st, k) for k in (
                "st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size",
                "st_uid", "st_blocks")}
            s = self.shadows.get(path)
            if s is not None:
                attrs["st_size"] = len(s.data)
            return attrs

    def readdir(self, path, fh):
        hidden = (JOURNAL, GRAVE) if path == "/" else ()
        return [".", ".."] + [n for n in os.listdir(self._full(path)) if n not in hidden]

    def access(self, path, mode):
        if not os.access(self._full(path), mode):
            raise FuseOSError(errno.EACCES)

    def mkdir(self, path, mode):
        with self.mutex:
            self._journal("mkdir", path, [os.path.dirname(path)])
            os.mkdir(self._full(path), mode)

    def rmdir(self, path):
        with self.mutex:
            if os.listdir(self._full(path)):
                raise FuseOSError(errno.ENOTEMPTY)
            kept = self._journal("rmdir", path, [os.path.dirname(path)])
            os.rename(self._full(path), kept)

    def unlink(self, path):
        with self.mutex:
            kept = self._journal("unlink", path, [os.path.dirname(path)])
            os.rename(self._full(path), kept)
            self.shadows.pop(path, None)

    def rename(self, old, new):
        with self.mutex:
            kept = self._journal("rename", old, [os.path.dirname(old), os.path.dirname(new)],
                                 to=new)
            if os.path.lexists(self._full(new)):
                os.rename(self._full(new), kept)
            os.rename(self._full(old), self._full(new))
            self.shadows.pop(new, None)
            prefix = old.rstrip("/") + "/"
            for p in [p for p in self.shadows if p == old or p.startswith(prefix)]:
                self.shadows[new + p[len(old):]] = self.shadows.pop(p)

    def chmod(self, path, mode):
        os.chmod(self._full(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._full(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self._full(path), times)

    def statfs(self, path):
        st = os.statvfs(self._full(path))
        return {k: getattr(st, k) for k in (
            "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
            "f_flag", "f_frsize", "f_namemax")}

    # ----- contents: in memory until fsync -----

    def create(self, path, mode, fi=None):
        with self.mutex:
            if not os.path.lexists(self._full(path)):
                self._journal("create", path, [os.path.dirname(path)])
            fd = os.open(self._full(path), os.O_CREAT | os.O_RDWR, mode)
            os.close(fd)
            return 0

    def open(self, path, flags):
        with self.mutex:
            if flags & os.O_TRUNC:
                self._shadow(path).data.clear()
            return 0

    def read(self, path, size, offset, fh):
        with self.mutex:
            s = self.shadows.get(path)
            if s is not None:
                return bytes(s.data[offset:offset + size])
            with open(self._full(path), "rb") as f:
                f.seek(offset)
                return f.read(size)

    def write(self, path, data, offset, fh):
        with self.mutex:
            s = self._shadow(path)
            if offset > len(s.data):
                s.data.extend(b"\0" * (offset - len(s.data)))
            s.data[offset:offset + len(data)] = data
            return len(data)

    def truncate(self, path, length, fh=None):
        with self.mutex:
            s = self._shadow(path)
            if length < len(s.data):
                del s.data[length:]
            else:
                s.data.extend(b"\0" * (length - len(s.data)))

    def fsync(self, path, datasync, fh):
        with self.mutex:
            s = self.shadows.pop(path, None)
            if os.path.exists(os.path.join(self.root, FAIL_FSYNC)):
                # As Linux may after a failed writeback: the error is reported once and the
                # unsynced data is gone.
                raise FuseOSError(errno.EIO)
            if s is None:
                return 0
            fd = os.open(self._full(path), os.O_WRONLY)
            try:
                os.ftruncate(fd, len(s.data))
                os.pwrite(fd, bytes(s.data), 0)
                os.fsync(fd)
            finally:
                os.close(fd)
            return 0

    def fsyncdir(self, path, datasync, fh):
        with self.mutex:
            if os.path.exists(os.path.join(self.root, FAIL_FSYNC)):
                raise FuseOSError(errno.EIO)
            self._durable(path)
            return 0

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        return 0


if __name__ == "__main__":
    backing, mountpoint = sys.argv[1], sys.argv[2]
    FUSE(LazyFS(backing), mountpoint, foreground=True, nothreads=False, allow_other=False)
