/* libarchive at run time; see kvmbox/bundle/archive.h. */
#include "kvmbox/bundle/archive.h"
#include "kvmbox/core/dynlib.h"

int kb_archive_load(struct kb_archive *a, struct kb_error *err)
{
#define SYM(field, name) { #name, (void **)&a->field }
	const struct kb_dynlib_symbol symbols[] = {
		SYM(read_new, archive_read_new),
		SYM(read_support_filter_all, archive_read_support_filter_all),
		SYM(read_support_format_tar, archive_read_support_format_tar),
		SYM(read_open_fd, archive_read_open_fd),
		SYM(read_open, archive_read_open),
		SYM(read_open2, archive_read_open2),
		SYM(read_header_position, archive_read_header_position),
		SYM(read_next_header, archive_read_next_header),
		SYM(read_data_block, archive_read_data_block),
		SYM(read_free, archive_read_free),
		SYM(read_support_format_iso9660, archive_read_support_format_iso9660),
		SYM(read_open_memory, archive_read_open_memory),
		SYM(filter_bytes, archive_filter_bytes),
		SYM(filter_code, archive_filter_code),
		SYM(write_new, archive_write_new),
		SYM(write_set_format_pax, archive_write_set_format_pax),
		SYM(write_add_filter_gzip, archive_write_add_filter_gzip),
		SYM(write_add_filter_xz, archive_write_add_filter_xz),
		SYM(write_add_filter_zstd, archive_write_add_filter_zstd),
		SYM(write_open_fd, archive_write_open_fd),
		SYM(write_set_format_iso9660, archive_write_set_format_iso9660),
		SYM(write_set_format_option, archive_write_set_format_option),
		SYM(write_open_memory, archive_write_open_memory),
		SYM(write_header, archive_write_header),
		SYM(write_data, archive_write_data),
		SYM(write_close, archive_write_close),
		SYM(write_free, archive_write_free),
		SYM(entry_new, archive_entry_new),
		SYM(entry_free, archive_entry_free),
		SYM(entry_pathname, archive_entry_pathname),
		SYM(entry_filetype, archive_entry_filetype),
		SYM(entry_size, archive_entry_size),
		SYM(entry_size_is_set, archive_entry_size_is_set),
		SYM(entry_hardlink, archive_entry_hardlink),
		SYM(entry_set_pathname, archive_entry_set_pathname),
		SYM(entry_set_size, archive_entry_set_size),
		SYM(entry_set_filetype, archive_entry_set_filetype),
		SYM(entry_set_perm, archive_entry_set_perm),
		SYM(entry_set_mtime, archive_entry_set_mtime),
		SYM(entry_sparse_add_entry, archive_entry_sparse_add_entry),
		SYM(entry_sparse_reset, archive_entry_sparse_reset),
		SYM(entry_sparse_next, archive_entry_sparse_next),
		SYM(error_string, archive_error_string),
		SYM(error_errno, archive_errno),
	};
#undef SYM
	return kb_dynlib_load(KB_LIB_ARCHIVE, symbols, sizeof(symbols) / sizeof(symbols[0]), err);
}

const char *kb_archive_error(const struct kb_archive *ar, struct archive *a, const char *fallback)
{
	const char *message = a ? ar->error_string(a) : NULL;
	return message && *message ? message : fallback;
}
