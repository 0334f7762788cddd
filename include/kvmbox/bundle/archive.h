/* The part of libarchive kvmbox uses, loaded at run time (see kvmbox/core/dynlib.h). */
#ifndef KVMBOX_ARCHIVE_H
#define KVMBOX_ARCHIVE_H

#include <archive.h>
#include <archive_entry.h>
#include "kvmbox/core/error.h"

struct kb_archive {
	/* reading */
	__typeof__(archive_read_new) *read_new;
	__typeof__(archive_read_support_filter_all) *read_support_filter_all;
	__typeof__(archive_read_support_format_tar) *read_support_format_tar;
	__typeof__(archive_read_open_fd) *read_open_fd;
	__typeof__(archive_read_open) *read_open;
	__typeof__(archive_read_open2) *read_open2;
	__typeof__(archive_read_header_position) *read_header_position;
	__typeof__(archive_read_next_header) *read_next_header;
	__typeof__(archive_read_data_block) *read_data_block;
	__typeof__(archive_read_free) *read_free;
	__typeof__(archive_read_support_format_iso9660) *read_support_format_iso9660;
	__typeof__(archive_read_open_memory) *read_open_memory;
	__typeof__(archive_filter_bytes) *filter_bytes;
	__typeof__(archive_filter_code) *filter_code;
	/* writing */
	__typeof__(archive_write_new) *write_new;
	__typeof__(archive_write_set_format_pax) *write_set_format_pax;
	__typeof__(archive_write_add_filter_gzip) *write_add_filter_gzip;
	__typeof__(archive_write_add_filter_xz) *write_add_filter_xz;
	__typeof__(archive_write_add_filter_zstd) *write_add_filter_zstd;
	__typeof__(archive_write_open_fd) *write_open_fd;
	__typeof__(archive_write_set_format_iso9660) *write_set_format_iso9660;
	__typeof__(archive_write_set_format_option) *write_set_format_option;
	__typeof__(archive_write_open_memory) *write_open_memory;
	__typeof__(archive_write_header) *write_header;
	__typeof__(archive_write_data) *write_data;
	__typeof__(archive_write_close) *write_close;
	__typeof__(archive_write_free) *write_free;
	/* entries and errors */
	__typeof__(archive_entry_new) *entry_new;
	__typeof__(archive_entry_free) *entry_free;
	__typeof__(archive_entry_pathname) *entry_pathname;
	__typeof__(archive_entry_filetype) *entry_filetype;
	__typeof__(archive_entry_size) *entry_size;
	__typeof__(archive_entry_size_is_set) *entry_size_is_set;
	__typeof__(archive_entry_hardlink) *entry_hardlink;
	__typeof__(archive_entry_set_pathname) *entry_set_pathname;
	__typeof__(archive_entry_set_size) *entry_set_size;
	__typeof__(archive_entry_set_filetype) *entry_set_filetype;
	__typeof__(archive_entry_set_perm) *entry_set_perm;
	__typeof__(archive_entry_set_mtime) *entry_set_mtime;
	__typeof__(archive_entry_sparse_add_entry) *entry_sparse_add_entry;
	__typeof__(archive_entry_sparse_reset) *entry_sparse_reset;
	__typeof__(archive_entry_sparse_next) *entry_sparse_next;
	__typeof__(archive_error_string) *error_string;
	__typeof__(archive_errno) *error_errno;
};

int kb_archive_load(struct kb_archive *a, struct kb_error *err);

/* libarchive's message for the last error on @a, or @fallback when it has none (it can be NULL). */
const char *kb_archive_error(const struct kb_archive *ar, struct archive *a, const char *fallback);

#endif
