# shellcheck shell=dash
# pebuilder live system: how the initramfs finds its own boot medium. Sourced by /init (and by the
# tests, with stand-ins for mount and the block devices).
#
# Every medium pebuilder writes has a label (the ISO's volume id, a disk's root file system label)
# and an identity in /os/pebuilder.id: a digest of the system it holds (kernel, initramfs,
# core.sqfs, /ext) and of what it is (this ISO, that disk image, the install image). Two media may
# share a label, not an id. Each boot entry names both: pb.media=LABEL=X pb.id=ID. Every block
# device labelled X is looked into (mounted read-only, each once) and the one holding ID is the
# medium; whatever else carries the label (a disk this PE installed, another build's disk, a USB
# stick) is left alone.
#   pb.media=/dev/NAME, UUID=...   that device, taken as is (its id is not checked)
#   pb.id=any, or no pb.id         the first device labelled X that holds a system
# Labels are read from the devices' first 34 KiB (ext2/3/4 superblock, ISO 9660 primary volume
# descriptor, FAT boot sector): busybox's findfs names only the first device with a label, and
# Debian's busybox has no blkid.

PB_SYS=${PB_SYS:-/sys/class/block} # where the block devices are listed
PB_DEV=${PB_DEV:-/dev}             # where their nodes are
PB_PROBE=${PB_PROBE:-/run/pb/probe}
PB_HEAD=${PB_HEAD:-/tmp/pb-head}
PROBED=" " # " DEV=ID " words: the devices looked into so far (each is mounted once)
DEV=""     # pick_medium's answer
SEEN=""    # ... and what carried the label, for the messages
SYSTEMS=0  # ... and how many of those hold a system

at() { # OFFSET COUNT: bytes of the device head read last
	dd if="$PB_HEAD" bs=1 skip="$1" count="$2" 2>/dev/null
}

fs_of() { # DEV -> "TYPE LABEL" of the ext2/3/4, ISO 9660 or FAT file system on DEV; nothing for others
	rm -f "$PB_HEAD"
	dd if="$1" of="$PB_HEAD" bs=2048 count=17 2>/dev/null
	[ -s "$PB_HEAD" ] || return 1
	if [ "$(at 1080 2 | od -An -tx1 | tr -d ' \n')" = 53ef ]; then
		echo "ext4 $(at 1144 16 | tr -d '\000')"
	elif [ "$(at 32769 5)" = CD001 ]; then
		echo "iso9660 $(at 32808 32 | sed 's/ *$//')"
	elif [ "$(at 82 5)" = FAT32 ]; then
		echo "vfat $(at 71 11 | sed 's/ *$//')"
	elif [ "$(at 54 3)" = FAT ]; then
		echo "vfat $(at 43 11 | sed 's/ *$//')"
	fi
}

id_of() { # DEV TYPE -> what DEV's /os/pebuilder.id says; "none" without one, "no-system" without /os/core.sqfs
	mkdir -p "$PB_PROBE"
	# read-only, and no journal replayed (noload) on a disk that may not be ours
	if [ "$2" = ext4 ]; then
		mount -t ext4 -o ro,noload "$1" "$PB_PROBE" 2>/dev/null || mount -t ext4 -o ro "$1" "$PB_PROBE" 2>/dev/null ||
			return 1
	else
		mount -t "$2" -o ro "$1" "$PB_PROBE" 2>/dev/null || return 1
	fi
	if [ ! -f "$PB_PROBE/os/core.sqfs" ]; then
		echo no-system
	elif [ -s "$PB_PROBE/os/pebuilder.id" ]; then
		v=$(head -c 64 "$PB_PROBE/os/pebuilder.id" | tr -cd '0-9a-f')
		echo "${v:-none}"
	else
		echo none
	fi
	umount "$PB_PROBE"
}

probed() { # DEV -> its id, when it was looked into before
	case "$PROBED" in
	*" $1="*)
		rest=${PROBED#*" $1="}
		echo "${rest%% *}"
		return 0
		;;
	esac
	return 1
}

describe() { # ID -> how the messages say it
	case "$1" in
	none) echo "no /os/pebuilder.id" ;;
	no-system) echo "no /os/core.sqfs" ;;
	*) echo "id $1" ;;
	esac
}

pick_medium() { # SPEC ID: DEV becomes the medium SPEC and ID name ("" while none is there)
	DEV="" SEEN="" SYSTEMS=0
	case "$1" in
	/dev/*)
		[ -e "$1" ] && DEV=$1
		return 0
		;;
	LABEL=*) ;;
	*)
		DEV=$(findfs "$1" 2>/dev/null) # UUID=... and whatever else findfs knows: taken as is
		return 0
		;;
	esac
	want=${1#LABEL=}
	for d in "$PB_SYS"/*; do
		case "${d##*/}" in loop* | ram* | zram* | fd*) continue ;; esac
		dev="$PB_DEV/${d##*/}"
		[ -e "$dev" ] || continue
		info=$(fs_of "$dev") || continue
		[ -n "$info" ] && [ "${info#* }" = "$want" ] || continue
		if ! id=$(probed "$dev"); then
			id=$(id_of "$dev" "${info%% *}") || continue # not mountable (yet): looked at again next time
			PROBED="$PROBED$dev=$id "
		fi
		SEEN="$SEEN, $dev ($(describe "$id"))"
		[ "$id" = no-system ] || SYSTEMS=$((SYSTEMS + 1))
		case "$2" in
		'' | any) [ -z "$DEV" ] && [ "$id" != no-system ] && DEV=$dev ;;
		"$id")
			DEV=$dev
			SEEN=${SEEN#, }
			return 0
			;;
		esac
	done
	SEEN=${SEEN#, }
	return 0
}
