// Numbers and dates as an operator reads them.

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 || value >= 100 ? 0 : 1)} ${units[unit]}`;
}

/** 3725.4 → "1:02:05"; 65 → "1:05"; null → "—". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return '—';
  const total = Math.round(Number(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** An age like "4 s ago", "3 min ago", "2 h ago", "5 d ago". */
export function age(iso, now = Date.now()) {
  if (!iso) return '—';
  const secs = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (secs < 60) return `${secs} s ago`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h ago`;
  return `${Math.floor(secs / 86400)} d ago`;
}

export function dateTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** The first video stream's size, "1280×720", from a media's probe. */
export function resolution(media) {
  const video = media?.probe?.streams?.find((s) => s.codec_type === 'video' && s.width);
  return video ? `${video.width}×${video.height}` : '—';
}

export function hasVideo(media) {
  return Boolean(media?.probe?.streams?.some((s) => s.codec_type === 'video'));
}

/** Seconds as ETA text, "—" when unknown. */
export function eta(seconds) {
  return seconds === null || seconds === undefined ? '—' : duration(seconds);
}

export function title(media) {
  return media?.metadata?.title || media?.filename || media?.id || '';
}
