/**
 * A hand-written SVG bar chart of the hello benchmark: one panel per link, a group of bars per image,
 * one bar per mode (total seconds to first output, stacked pull / create / run), the ratio to
 * overlayfs above each lazypull bar.
 */
import type { Row } from './main.js';

const COLORS = ['#6b7280', '#2563eb', '#16a34a', '#d97706', '#9333ea', '#dc2626'];
const PHASE_OPACITY = { pull: 1, create: 0.6, run: 0.35 } as const;

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceStep(max: number): number {
  const raw = max / 5;
  const pow = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * pow) return m * pow;
  return 10 * pow;
}

export function renderSvg(rows: Row[], links: string[]): string {
  const modes = [...new Set(rows.map((r) => r.mode))];
  const images = [...new Set(rows.map((r) => r.image))];
  const barW = 28;
  const groupGap = 30;
  const plotH = 260;
  const left = 60;
  const top = 50;
  const groupW = modes.length * barW + groupGap;
  const panelW = Math.max(320, left + images.length * groupW + 20);
  const panelH = top + plotH + 50;
  const legendH = 30 + 18 * modes.length;
  const panels = links.filter((l) => rows.some((r) => r.link === l));
  const width = panelW * Math.max(1, panels.length);
  const height = panelH + legendH;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
  ];
  panels.forEach((link, p) => {
    const x0 = p * panelW;
    const linkRows = rows.filter((r) => r.link === link);
    const max = Math.max(0.1, ...linkRows.map((r) => r.totalS));
    const step = niceStep(max);
    const yMax = Math.ceil(max / step) * step;
    const y = (s: number) => Math.round((top + plotH - (s / yMax) * plotH) * 10) / 10;
    out.push(`<text x="${x0 + panelW / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${escape(link)}: seconds to first output</text>`);
    for (let s = 0; s <= yMax + 1e-9; s += step) {
      out.push(`<line x1="${x0 + left}" x2="${x0 + panelW - 10}" y1="${y(s)}" y2="${y(s)}" stroke="#e5e7eb"/>`);
      out.push(`<text x="${x0 + left - 6}" y="${y(s) + 4}" text-anchor="end">${Number(s.toFixed(2))}</text>`);
    }
    images.forEach((image, g) => {
      const gx = x0 + left + 10 + g * groupW;
      modes.forEach((mode, m) => {
        const row = linkRows.find((r) => r.image === image && r.mode === mode);
        if (!row) return;
        const bx = gx + m * barW;
        const color = COLORS[m % COLORS.length]!;
        let base = 0;
        for (const [phase, value] of [['pull', row.pullS], ['create', row.createS], ['run', row.runS]] as const) {
          // Phases are medians of their own: scale them to the median total so the bar ends at it.
          const sum = row.pullS + row.createS + row.runS;
          const v = sum > 0 ? (value / sum) * row.totalS : 0;
          out.push(`<rect x="${bx}" y="${y(base + v)}" width="${barW - 4}" height="${Math.max(0, Math.round((y(base) - y(base + v)) * 10) / 10)}" fill="${color}" fill-opacity="${PHASE_OPACITY[phase]}"><title>${escape(`${image} ${mode} ${phase}: ${value.toFixed(2)} s`)}</title></rect>`);
          base += v;
        }
        const label = row.ratio !== undefined && mode !== 'overlayfs' ? `${row.ratio.toFixed(2)}x` : row.totalS.toFixed(1);
        out.push(`<text x="${bx + (barW - 4) / 2}" y="${y(row.totalS) - 4}" text-anchor="middle" font-size="9">${label}</text>`);
      });
      out.push(`<text x="${gx + (modes.length * barW) / 2}" y="${top + plotH + 16}" text-anchor="middle" font-size="12">${escape(image)}</text>`);
    });
    out.push(`<line x1="${x0 + left}" x2="${x0 + left}" y1="${top}" y2="${top + plotH}" stroke="#111"/>`);
  });
  const ly = panelH + 10;
  modes.forEach((mode, m) => {
    out.push(`<rect x="${left}" y="${ly + m * 18}" width="12" height="12" fill="${COLORS[m % COLORS.length]}"/>`);
    out.push(`<text x="${left + 18}" y="${ly + m * 18 + 10}">${escape(mode)}</text>`);
  });
  out.push(`<text x="${left + 200}" y="${ly + 10}">bar shades, bottom to top: pull, create, run to first output</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
